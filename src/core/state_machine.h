// Declarative state machines: each entity kind declares its states, named
// transitions (from -> to), guards, the permission a transition needs and
// whether a person must give a reason. The engine only decides; applying a
// transition (projection + event) is the store's job.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/result.h"

namespace kervan::core {

// What a guard sees: the entity's stored data and the data sent with the request.
// True when `reason` has no visible character: such a reason is no reason.
bool IsBlankReason(std::string_view reason);

struct GuardInput {
  const Json& entity_data;
  const Json& request_data;
};
// Returns Ok() to allow; an Error (usually kFailedPrecondition) to refuse.
using Guard = std::function<Status(const GuardInput&)>;

struct TransitionSpec {
  std::string name;               // "approve"
  std::vector<std::string> from;  // states it may start from
  std::string to;                 // state it ends in
  std::string event;              // past-tense verb for the event type: "approved"
  std::string permission;         // permission a caller needs: "model_version.approve"
  bool reason_required = false;   // a manual intervention must say why
  Guard guard;                    // optional
  std::string guard_description;  // shown in Describe(), e.g. "data.checks_passed == true"
};

// What a request asks for.
struct TransitionRequest {
  std::string transition;
  std::string reason;
  const Json* request_data = nullptr;  // may be null
};

class StateMachine {
 public:
  // Validates the declaration: unique state and transition names, every
  // from/to names a declared state, the initial state is declared, every
  // transition has an event verb. kInvalidArgument naming the problem otherwise.
  static Result<StateMachine> Build(std::string kind, std::vector<std::string> states,
                                    std::string initial, std::vector<TransitionSpec> transitions);

  const std::string& kind() const { return kind_; }
  const std::string& initial_state() const { return initial_; }
  const std::vector<std::string>& states() const { return states_; }
  const std::vector<TransitionSpec>& transitions() const { return transitions_; }
  bool HasState(const std::string& s) const;

  // Transitions that may start from `state`, in declaration order.
  std::vector<const TransitionSpec*> AllowedFrom(const std::string& state) const;

  // Decides whether `request` may be applied to an entity in `current_state`
  // holding `entity_data`. Errors:
  //  - kInvalidArgument: unknown transition name (field "transition"), or a
  //    missing reason where reason_required (field "reason");
  //  - kFailedPrecondition: the transition does not start from current_state
  //    or a guard refused; details carry "current_state" and
  //    "allowed_transitions" (names with their target states).
  Result<const TransitionSpec*> Check(const std::string& current_state,
                                      const TransitionRequest& request,
                                      const Json& entity_data) const;

  // The declaration as JSON (states, initial, transitions with from/to/
  // event/permission/reason_required/guard).
  Json Describe() const;

 private:
  StateMachine() = default;
  Json AllowedJson(const std::string& state) const;

  std::string kind_;
  std::vector<std::string> states_;
  std::string initial_;
  std::vector<TransitionSpec> transitions_;
  std::map<std::string, size_t> by_name_;
};

}  // namespace kervan::core
