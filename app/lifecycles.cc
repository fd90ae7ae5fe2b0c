// Lifecycles declared by the foundation. model_version is the first domain
// lifecycle (DESIGN.md's "Registered -> Validating -> DeploymentReady");
// the registry module takes it over with its validation gates.
#include "app/routes.h"

namespace kervan::app {

core::Status RegisterLifecycles(store::Lifecycles& lifecycles) {
  using core::TransitionSpec;
  auto checks_passed = [](const core::GuardInput& in) -> core::Status {
    const auto& v = in.request_data.value("checks", core::Json::object());
    if (!v.is_object() || v.empty()) {
      return core::FailedPrecondition(
          "guard: transition \"pass\" needs evidence: data.checks must be a non-empty object of "
          "check name -> true");
    }
    for (const auto& [name, ok] : v.items()) {
      if (ok != true) {
        return core::FailedPrecondition("guard: check \"" + name + "\" did not pass");
      }
    }
    return core::Ok();
  };
  ASSIGN_OR_RETURN(
      core::StateMachine model_version,
      core::StateMachine::Build(
          "model_version", {"Registered", "Validating", "DeploymentReady", "Rejected", "Archived"},
          "Registered",
          {
              {.name = "validate",
               .from = {"Registered"},
               .to = "Validating",
               .event = "validation_started",
               .permission = "model_version.validate"},
              {.name = "pass",
               .from = {"Validating"},
               .to = "DeploymentReady",
               .event = "validated",
               .permission = "model_version.validate",
               .guard = checks_passed,
               .guard_description = "every data.checks.* is true"},
              {.name = "fail",
               .from = {"Validating"},
               .to = "Rejected",
               .event = "validation_failed",
               .permission = "model_version.validate"},
              {.name = "approve",
               .from = {"Validating", "Rejected"},
               .to = "DeploymentReady",
               .event = "approved",
               .permission = "model_version.approve",
               .reason_required = true},
              {.name = "reject",
               .from = {"Validating", "DeploymentReady"},
               .to = "Rejected",
               .event = "rejected",
               .permission = "model_version.approve",
               .reason_required = true},
              {.name = "archive",
               .from = {"DeploymentReady", "Rejected"},
               .to = "Archived",
               .event = "archived",
               .permission = "model_version.archive",
               .reason_required = true},
          }));
  return lifecycles.Register(std::move(model_version));
}

}  // namespace kervan::app
