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
// id "<model>:<version>"). Deleting a version moves its entity to the
// terminal state Deleted and removes its registry rows; version numbers of a
// model name are never reused, even after the model is deleted.
//
// MLflow stages ("None", "Staging", "Production", "Archived") are routing
// labels beside the lifecycle, moved by the MLflow API (mlflow_routes.cc,
// docs/registry.md "MLflow model registry").
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "auth/auth.h"
#include "core/core.h"
#include "http/http.h"
#include "store/store.h"

namespace kervan::tracking {
class Tracking;
}

namespace kervan::registry {

using core::Json;
using core::Result;
using core::Status;

inline constexpr std::string_view kSystemActor = "system:registry";
inline constexpr std::string_view kVersionKind = "model_version";

// MLflow's stages, canonical spelling.
inline constexpr std::string_view kStageNone = "None";
inline constexpr std::string_view kStageStaging = "Staging";
inline constexpr std::string_view kStageProduction = "Production";
inline constexpr std::string_view kStageArchived = "Archived";
// The canonical stage for `text` (any case), nullopt when it is none of them.
std::optional<std::string> CanonicalStage(std::string_view text);

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
  std::string stage = std::string(kStageNone);  // MLflow's current_stage
  std::string source;    // the source URI as registered ("" for native registrations)
  std::string run_link;  // MLflow's run_link, "" when none
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
  std::string source;    // MLflow: the source URI as given (artifact_uri is its resolution)
  std::string run_link;  // MLflow: link to the run on another tracking server
};

struct ListModelsRequest {
  // nullopt: every project; otherwise only these (the caller's readable ones).
  std::optional<std::set<std::string>> projects;
  std::string after;  // name to continue after
  int limit = 100;
};

// A manual version transition: approve | reject | archive.
enum class ManualTransition { kApprove, kReject, kArchive };

// Searches (MLflow's registered-models/search and model-versions/search).
// The filter is parsed and checked by the caller; attribute keys the
// registry knows: models "name"; versions "name", "version_number"
// (numeric), "run_id", "source_path". Tags are "tags.<key>". Unknown
// attributes never match.
struct ModelSearchRequest {
  core::filter::Filter filter;
  // Keys "name", "last_updated_timestamp" (or "timestamp"),
  // "creation_timestamp"; ties broken by name ascending.
  std::vector<core::filter::OrderBy> order_by;
  int64_t offset = 0;
  int64_t max_results = 100;
  // nullopt: every project; otherwise only these (the caller's readable ones).
  std::optional<std::set<std::string>> projects;
};

struct VersionSearchRequest {
  core::filter::Filter filter;
  // Keys "name", "version_number", "creation_timestamp",
  // "last_updated_timestamp"; empty: last_updated_timestamp DESC. Ties
  // broken by name ascending, then version descending (as MLflow).
  std::vector<core::filter::OrderBy> order_by;
  int64_t offset = 0;
  int64_t max_results = 200000;
  std::optional<std::set<std::string>> projects;
};

template <typename T>
struct SearchPage {
  std::vector<T> items;
  std::optional<int64_t> next_offset;  // set when more results follow
};

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
  // Sets one tag (event registered_model.tag_set) or deletes it
  // (registered_model.tag_deleted; deleting an absent tag is OK, no event).
  Status SetModelTag(const std::string& name, const std::string& key, const std::string& value,
                     const store::CommandContext& ctx);
  Status DeleteModelTag(const std::string& name, const std::string& key,
                        const store::CommandContext& ctx);
  // Renames a model that has no versions (event registered_model.renamed).
  // A model with versions is kFailedPrecondition: a version's entity id
  // "<model>:<version>" names it in the audit log and cannot change.
  // kAlreadyExists when new_name is taken, kInvalidArgument (field
  // "new_name") when it is not a model name.
  Result<RegisteredModel> RenameModel(const std::string& name, const std::string& new_name,
                                      const store::CommandContext& ctx);
  // Deletes the model, its versions and aliases from the registry tables:
  // event registered_model.deleted (data: the model, its versions and
  // aliases), then each version's lifecycle moves to Deleted
  // (model_version.deleted, caused by it). A model created later under the
  // same name continues the version numbering.
  Status DeleteModel(const std::string& name, const std::string& reason,
                     const store::CommandContext& ctx);
  Result<SearchPage<RegisteredModel>> SearchModels(const ModelSearchRequest& request);

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
  // Archiving also sets the version's stage to "Archived".
  Result<ModelVersion> Transition(const std::string& model, int64_t version,
                                  ManualTransition transition, const std::string& reason,
                                  const store::CommandContext& ctx);
  // Replaces the description (event model_version.updated; none when unchanged).
  Result<ModelVersion> UpdateVersion(const std::string& model, int64_t version,
                                     const std::string& description,
                                     const store::CommandContext& ctx);
  // One tag of a version: model_version.tag_set / model_version.tag_deleted
  // (deleting an absent tag is OK, no event).
  Status SetVersionTag(const std::string& model, int64_t version, const std::string& key,
                       const std::string& value, const store::CommandContext& ctx);
  Status DeleteVersionTag(const std::string& model, int64_t version, const std::string& key,
                          const store::CommandContext& ctx);
  // Moves the version to MLflow stage `stage` (canonical; kInvalidArgument
  // otherwise): event model_version.stage_changed with the reason.
  //  - "Archived" also applies the lifecycle's archive transition (caused by
  //    that event, same reason) when it is allowed: state DeploymentReady or
  //    Rejected and no alias points at the version. Otherwise only the stage
  //    changes, and the event's data.lifecycle says why.
  //  - A version whose state is Archived (final) cannot leave stage Archived
  //    (kFailedPrecondition).
  //  - archive_existing: every other version of the model in `stage` moves
  //    to "Archived" the same way. REQUIRES stage Staging or Production
  //    (kInvalidArgument otherwise).
  // Nothing to change (same stage, no archive to apply) appends no event.
  Result<ModelVersion> SetStage(const std::string& model, int64_t version, const std::string& stage,
                                bool archive_existing, const std::string& reason,
                                const store::CommandContext& ctx);
  // Deletes the version's registry rows; its lifecycle moves to Deleted
  // (event model_version.deleted), and each alias pointing at it is deleted
  // (registered_model.alias_deleted, caused by it, with a history row).
  Status DeleteVersion(const std::string& model, int64_t version, const std::string& reason,
                       const store::CommandContext& ctx);
  Result<SearchPage<ModelVersion>> SearchVersions(const VersionSearchRequest& request);
  // The newest version in each stage (only `stages`, canonical, when not
  // empty), ordered by each stage's oldest version, as MLflow lists a
  // model's latest_versions. kNotFound for an unknown model.
  Result<std::vector<ModelVersion>> LatestVersions(const std::string& model,
                                                   const std::vector<std::string>& stages);

  // Points `alias` at `version` (which must exist and not be Archived);
  // returns the change. Reason required.
  Result<AliasChange> SetAlias(const std::string& model, const std::string& alias, int64_t version,
                               const std::string& reason, const store::CommandContext& ctx);
  // SetAlias as part of the caller's command `tx`, for a module whose own
  // change must commit with the alias move (serving's promotion: a reader
  // that sees the rollout in full production also sees the champion
  // alias moved). kNotFound (no such version) and kFailedPrecondition (the
  // version is Archived, or the alias points at it already) come before
  // anything is written to `tx`, so the caller may go on with its command.
  Result<AliasChange> SetAliasIn(store::CommandTx& tx, const std::string& model,
                                 const std::string& alias, int64_t version,
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

// The MLflow Model Registry REST API 2.0 (registered-models/...,
// model-versions/... under /api/2.0/mlflow and /ajax-api/2.0/mlflow), mapped
// onto this registry as docs/registry.md "MLflow model registry" describes.
// `tracking` resolves "runs:/<run_id>/<path>" sources and gives the gate the
// run's latest metrics; it may be null (runs:/ sources are then refused and
// versions get no metrics). Each handler checks its permission in the
// model's project, like RegisterRoutes.
Status RegisterMlflowRoutes(http::Router& router, Registry& registry, tracking::Tracking* tracking,
                            const auth::Auth& auth);

}  // namespace kervan::registry
