// The rule engine: rules written in YAML (rule.h), versioned through the
// API, evaluated on events and periodically over monitors' numbers, acting
// on the rest of Kervan (start a retraining pipeline, pause/abort/roll back
// a rollout, deploy a version, move an alias, raise an alert, ask a person
// for approval).
//
// Every firing is one event, rule.fired, carrying the rule's version, the
// values it saw (the observation), the condition and the actions decided.
// Each action then runs as system:rules (permission rule.orchestrate, held
// by no role) with the firing as its causation, and ends in
// rule.action_succeeded or rule.action_failed (retried with backoff up to
// max_attempts; every failure is an event). Dry-run rules record their
// firings and skip the actions.
//
// Approvals are entities (kind "approval"): Pending -> Approved | Rejected,
// by a person with approval.decide and a reason. On approval the actions it
// holds run as above, caused by the approval event.
//
// A rule scoped to a project acts only on that project's endpoints,
// pipelines and models.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "auth/auth.h"
#include "core/core.h"
#include "http/http.h"
#include "rules/rule.h"
#include "store/store.h"

namespace kervan::pipelines {
class Pipelines;
}
namespace kervan::serving {
class Serving;
}
namespace kervan::registry {
class Registry;
}
namespace kervan::monitoring {
class Monitoring;
class Alerts;
}  // namespace kervan::monitoring

namespace kervan::rules {

inline constexpr std::string_view kRulesActor = "system:rules";
inline constexpr std::string_view kApprovalKind = "approval";

struct Rule {
  std::string name, project;
  int64_t version = 0;
  bool enabled = true;
  RuleSpec spec;
  std::string yaml;  // as submitted
  std::string created_by;
  int64_t created_us = 0, updated_us = 0;
  Json ToJson() const;
};

struct RuleVersion {
  std::string name;
  int64_t version = 0;
  std::string yaml, digest, created_by;
  int64_t created_us = 0;
  Json ToJson() const;
};

struct SubmitResult {
  Rule rule;
  bool created_version = false;  // false: the same spec as the latest version
};

// What the rule engine acts through; any may be null (its actions then fail
// visibly with "not available on this server").
struct Services {
  pipelines::Pipelines* pipelines = nullptr;
  serving::Serving* serving = nullptr;
  registry::Registry* registry = nullptr;
  monitoring::Monitoring* monitoring = nullptr;
  monitoring::Alerts* alerts = nullptr;
};

struct RulesOptions {
  std::chrono::milliseconds cycle_interval{1000};
  int max_attempts = 5;
  std::chrono::milliseconds retry_base{1000};  // doubles per failed attempt
};

class Rules {
 public:
  // Registers the "approval" lifecycle.
  static Result<std::unique_ptr<Rules>> Open(store::Database& db, store::EventLog& log,
                                             store::Lifecycles& lifecycles, Services services,
                                             RulesOptions options);
  ~Rules();

  // Parses, checks and stores a rule: a new version when its canonical spec
  // differs from the latest (event rule.version_created), none otherwise.
  Result<SubmitResult> Submit(std::string_view yaml, const store::CommandContext& ctx);
  Result<Rule> Get(const std::string& name);
  Result<std::vector<Rule>> List(const std::optional<std::set<std::string>>& projects);
  Result<std::vector<RuleVersion>> Versions(const std::string& name);
  Result<Rule> SetEnabled(const std::string& name, bool enabled, const std::string& reason,
                          const store::CommandContext& ctx);
  // The actions rules decided (newest first), optionally of one rule.
  Result<std::vector<Json>> Actions(const std::string& rule, int limit);

  // Evaluates `spec` (a stored rule's, or a draft) against the stored event
  // log and monitor evaluations in [from_us, to_us) with fresh condition
  // state, and lists when it would have fired next to the rule's recorded
  // firings in that range (when the rule exists).
  Result<Json> Replay(const RuleSpec& spec, int64_t from_us, int64_t to_us);

  // Approvals. Their data: rule, decision_id, summary, actions, project.
  Result<std::vector<store::Entity>> ListApprovals(const std::string& state);
  Result<store::Entity> GetApproval(const std::string& id);
  Result<store::Entity> Decide(const std::string& approval_id, bool approve,
                               const std::string& reason, const store::CommandContext& ctx);

  // Event-triggered rules and approvals; the durable subscription calls it.
  Status OnEvent(const store::Event& event);
  // Periodic rules (due ones), due action retries, alert re-sends.
  Status RunCycle(int64_t now_us);
  void Start();
  void Stop();

 private:
  struct State;
  Rules(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles, Services services,
        RulesOptions options);
  // `known`: the subject's states read beforehand (by rule); null: read here.
  Status Observe(const Rule& rule, const Observation& obs, const std::string& trigger,
                 const std::string& causation_id,
                 const std::map<std::string, ConditionState>* known = nullptr);
  Result<std::map<std::string, ConditionState>> StatesOf(const std::string& subject);
  Status Fire(const Rule& rule, const Observation& obs, const ConditionState& state,
              const std::string& trigger, const std::string& causation_id);
  Status ExecutePending(int64_t now_us);
  Result<Json> Execute(const std::string& rule_name, const std::string& project, ActionType type,
                       const Json& params, const std::string& decision_id,
                       const std::string& rule_text, const store::CommandContext& ctx);
  Result<std::shared_ptr<const std::vector<Rule>>> Enabled();
  void Invalidate();

  store::Database& db_;
  store::EventLog& log_;
  store::Lifecycles& lifecycles_;
  Services services_;
  RulesOptions options_;
  std::unique_ptr<State> state_;
};

// /api/v1/rules, /api/v1/rules/{name}[/versions|/actions|/test|/{enable,disable}],
// /api/v1/approvals[/{id}/{approve,reject}].
Status RegisterRoutes(http::Router& router, Rules& rules, const auth::Auth& auth);

}  // namespace kervan::rules
