#include "core/state_machine.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

namespace kervan::core {

bool IsBlankReason(std::string_view reason) {
  return reason.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

Result<StateMachine> StateMachine::Build(std::string kind, std::vector<std::string> states,
                                         std::string initial,
                                         std::vector<TransitionSpec> transitions) {
  StateMachine m;
  std::set<std::string> state_set;
  for (const auto& s : states) {
    if (s.empty() || !state_set.insert(s).second) {
      return InvalidArgument(
          fmt::format("state machine {}: duplicate or empty state \"{}\"", kind, s));
    }
  }
  if (!state_set.contains(initial)) {
    return InvalidArgument(
        fmt::format("state machine {}: initial state \"{}\" is not declared", kind, initial));
  }
  for (size_t i = 0; i < transitions.size(); ++i) {
    const auto& t = transitions[i];
    if (t.name.empty() || m.by_name_.contains(t.name)) {
      return InvalidArgument(
          fmt::format("state machine {}: duplicate or empty transition \"{}\"", kind, t.name));
    }
    if (t.event.empty()) {
      return InvalidArgument(
          fmt::format("state machine {}: transition \"{}\" has no event verb", kind, t.name));
    }
    if (t.from.empty()) {
      return InvalidArgument(
          fmt::format("state machine {}: transition \"{}\" has no source state", kind, t.name));
    }
    for (const auto& f : t.from) {
      if (!state_set.contains(f)) {
        return InvalidArgument(
            fmt::format("state machine {}: transition \"{}\" starts from undeclared state \"{}\"",
                        kind, t.name, f));
      }
    }
    if (!state_set.contains(t.to)) {
      return InvalidArgument(
          fmt::format("state machine {}: transition \"{}\" ends in undeclared state \"{}\"", kind,
                      t.name, t.to));
    }
    m.by_name_[t.name] = i;
  }
  m.kind_ = std::move(kind);
  m.states_ = std::move(states);
  m.initial_ = std::move(initial);
  m.transitions_ = std::move(transitions);
  return m;
}

bool StateMachine::HasState(const std::string& s) const {
  return std::find(states_.begin(), states_.end(), s) != states_.end();
}

std::vector<const TransitionSpec*> StateMachine::AllowedFrom(const std::string& state) const {
  std::vector<const TransitionSpec*> out;
  for (const auto& t : transitions_) {
    if (std::find(t.from.begin(), t.from.end(), state) != t.from.end())
      out.push_back(&t);
  }
  return out;
}

Json StateMachine::AllowedJson(const std::string& state) const {
  Json allowed = Json::array();
  for (const TransitionSpec* t : AllowedFrom(state)) {
    allowed.push_back({{"name", t->name}, {"to", t->to}, {"reason_required", t->reason_required}});
  }
  return allowed;
}

Result<const TransitionSpec*> StateMachine::Check(const std::string& current_state,
                                                  const TransitionRequest& request,
                                                  const Json& entity_data) const {
  auto it = by_name_.find(request.transition);
  if (it == by_name_.end()) {
    Error e = InvalidArgument(fmt::format("field \"transition\": unknown transition \"{}\" for {}",
                                          request.transition, kind_),
                              "transition");
    e.details = {{"current_state", current_state},
                 {"allowed_transitions", AllowedJson(current_state)}};
    return e;
  }
  const TransitionSpec& t = transitions_[it->second];
  if (std::find(t.from.begin(), t.from.end(), current_state) == t.from.end()) {
    return FailedPrecondition(
        fmt::format("transition \"{}\" is not allowed from state {} of {}", t.name, current_state,
                    kind_),
        {{"current_state", current_state}, {"allowed_transitions", AllowedJson(current_state)}});
  }
  if (t.reason_required && IsBlankReason(request.reason)) {
    return InvalidArgument(
        fmt::format("field \"reason\": transition \"{}\" is a manual intervention and needs a "
                    "non-empty reason",
                    t.name),
        "reason");
  }
  if (t.guard) {
    static const Json kEmpty = Json::object();
    const Json& req = request.request_data ? *request.request_data : kEmpty;
    Status s = t.guard(GuardInput{entity_data, req});
    if (!s) {
      Error e = std::move(s).error();
      if (e.details.is_null()) {
        e.details = {{"current_state", current_state},
                     {"allowed_transitions", AllowedJson(current_state)},
                     {"guard", t.guard_description}};
      }
      return e;
    }
  }
  return &t;
}

Json StateMachine::Describe() const {
  Json ts = Json::array();
  for (const auto& t : transitions_) {
    ts.push_back({{"name", t.name},
                  {"from", t.from},
                  {"to", t.to},
                  {"event", kind_ + "." + t.event},
                  {"permission", t.permission},
                  {"reason_required", t.reason_required},
                  {"guard", t.guard_description}});
  }
  return {{"kind", kind_}, {"states", states_}, {"initial_state", initial_}, {"transitions", ts}};
}

}  // namespace kervan::core
