// Rules: the pure part. A rule's spec (parsed from YAML), the values a
// condition sees, and the condition's state machine over successive
// evaluations (`for`, cooldown, alert resolution). The service (rules.h)
// and the replay (`kervan rules test --replay`) both drive Step(), so a
// replay over stored history decides exactly what the live engine decided.
//
// A rule in YAML:
//
//   name: retrain-on-drift                  [a-z0-9][a-z0-9._-]{0,99}
//   description: retrain when inputs drift  optional
//   project: default                        optional ("" = global)
//   on:
//     events: [monitor.evaluated]           event types; "monitor.*" is a prefix
//     every: 30s                            periodic evaluation of every monitor
//   when: "metrics.drift_share >= 0.5 and subject_id = 'breast-cancer'"
//   for: 3                                  consecutive evaluations, or a duration "5m"
//   cooldown: 10m                           no second firing for the same subject
//   dry_run: false                          decide and record, but do not act
//   actions:
//     - start_pipeline: {pipeline: breast-cancer-train, params: {rounds: "40"}}
//     - alert: {severity: warning, summary: "drift on {{subject_id}}"}
//
// Everything here is a pure function of its arguments: thread-safe, no I/O.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "core/filter.h"

namespace kervan::rules {

using core::Json;
using core::Result;
using core::Status;

// The actions a rule may take. Parameters per type (strings may hold
// {{placeholders}}: {{subject_id}}, {{type}}, {{data.<path>}}, {{metrics.<name>}}):
//   start_pipeline  pipeline, params (map), no_cache (bool)
//   pause_rollout | resume_rollout | abort_rollout | rollback
//                   endpoint
//   move_alias      model, alias, version (integer or placeholder)
//   deploy          endpoint, model, version, strategy (object, as POST /api/v1/deployments)
//   alert           severity (critical|warning|info), summary, description, labels (map)
//   approval        summary, actions (a list of the actions above, run once a
//                   person with approval.decide approves)
enum class ActionType {
  kStartPipeline,
  kPauseRollout,
  kResumeRollout,
  kAbortRollout,
  kRollback,
  kMoveAlias,
  kDeploy,
  kAlert,
  kApproval,
};
std::string_view ActionTypeName(ActionType type);
std::optional<ActionType> ParseActionType(std::string_view name);

struct ActionSpec {
  ActionType type = ActionType::kAlert;
  Json params = Json::object();  // as written (placeholders unresolved)
  Json ToJson() const;           // {"<type>": params}
};

struct RuleSpec {
  std::string name, description, project;
  std::vector<std::string> events;  // exact types, or prefixes ending in '.' ("monitor.")
  int64_t every_ms = 0;             // 0: no periodic evaluation
  std::string when_text;            // as written
  core::filter::Filter when;        // parsed
  int64_t for_count = 1;            // consecutive evaluations that must match
  int64_t for_ms = 0;               // or: how long it must keep matching (0: unused)
  int64_t cooldown_ms = 0;
  bool dry_run = false;
  std::vector<ActionSpec> actions;

  bool MatchesEventType(std::string_view type) const;
  Json ToJson() const;  // canonical: the digest and the versions compare this
};

// Parses and checks a rule. Errors are kInvalidArgument naming the field and
// its YAML line: `actions[1].alert.severity (line 14): must be critical,
// warning or info`.
Result<RuleSpec> ParseRule(std::string_view yaml);

// "30s", "5m", "2h", "1d", "250ms" or a bare number of seconds.
Result<int64_t> ParseDurationMs(std::string_view text, std::string_view field);

// What a condition sees: attributes (type, subject_kind, subject_id, actor,
// project, reason, state, model, version), data.<path> (the event's data) and
// metrics.<name> (a monitor's numbers, flat: drift_share, accuracy,
// drift.<feature>, ...).
struct Observation {
  int64_t time_us = 0;
  int64_t event_seq = 0;  // 0 for a periodic evaluation
  std::string subject;    // the key `for` and cooldown are kept per
  std::map<std::string, std::string> attributes;
  Json data = Json::object();
  std::map<std::string, double> metrics;
  Json ToJson() const;  // the values the rule saw, for the decision event
};

enum class Applicability { kMatched, kNotMatched, kNotApplicable };
// kNotApplicable: the observation carries none of the data./metrics. fields
// the condition reads (e.g. a monitor event before any evaluation), so it
// neither counts towards `for` nor breaks a streak. A condition with no
// data./metrics. clause is always applicable.
Applicability Evaluate(const RuleSpec& rule, const Observation& obs);

// The per-(rule, subject) memory between evaluations.
struct ConditionState {
  int64_t consecutive = 0;    // matching evaluations in a row
  int64_t since_us = 0;       // first of them (0: not matching)
  int64_t last_fired_us = 0;  // 0: never
  bool alert_active = false;  // an alert raised by this rule is firing
  bool operator==(const ConditionState&) const = default;
};

struct StepResult {
  bool fire = false;           // act now
  bool in_cooldown = false;    // would fire but the cooldown holds it back
  bool resolve_alert = false;  // the condition stopped holding: resolve its alert
};

// Advances the state by one evaluation at `now_us`. The condition holds when
// it matched `for_count` evaluations in a row (and, with for_ms, has been
// matching for that long); it fires when it holds and the last firing for
// this subject is at least `cooldown_ms` ago. A firing does not reset the
// streak: a condition that still holds fires again after the cooldown.
StepResult Step(const RuleSpec& rule, ConditionState& state, Applicability applicability,
                int64_t now_us);

// Replaces {{subject_id}}, {{type}}, {{data.a.b}}, {{metrics.x}} and
// {{<attribute>}} in every string of `params`. An unknown placeholder is an
// error naming it (an action must not run with a half-filled parameter).
Result<Json> RenderParams(const Json& params, const Observation& obs);

}  // namespace kervan::rules
