// libFuzzer target: an untrusted request body on its way through the
// transition route — JSON parse, strict object reading, the state machine's
// decision — plus the canonical-encoding invariant the hash chain relies on.
// Build and run: fuzz/run.sh [seconds]
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/core.h"

namespace {

using kervan::core::Json;

const kervan::core::StateMachine& Machine() {
  static const auto* machine = new kervan::core::StateMachine(
      kervan::core::StateMachine::Build(
          "model_version", {"Registered", "Validating", "DeploymentReady", "Rejected"},
          "Registered",
          {{.name = "validate", .from = {"Registered"}, .to = "Validating", .event = "started"},
           {.name = "approve",
            .from = {"Validating", "Rejected"},
            .to = "DeploymentReady",
            .event = "approved",
            .reason_required = true},
           {.name = "pass",
            .from = {"Validating"},
            .to = "DeploymentReady",
            .event = "validated",
            .guard = [](const kervan::core::GuardInput& in) -> kervan::core::Status {
              if (in.request_data.value("checks", Json::object()).is_object()) {
                return kervan::core::Ok();
              }
              return kervan::core::FailedPrecondition("checks must be an object");
            }}})
          .value());
  return *machine;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto body = kervan::core::ParseJson(text);
  if (!body)
    return 0;

  // Canonical encoding must be a fixed point: what is hashed is what is stored.
  std::string canonical = kervan::core::CanonicalJson(*body);
  auto reparsed = kervan::core::ParseJson(canonical);
  if (!reparsed || kervan::core::CanonicalJson(*reparsed) != canonical)
    __builtin_trap();

  auto reader = kervan::core::ObjectReader::Of(*body);
  if (!reader)
    return 0;
  auto transition = reader->RequiredString("transition");
  auto reason = reader->OptionalString("reason");
  auto extra = reader->OptionalObject("data");
  (void)reader->OptionalInt("limit", 1, 1000);
  (void)reader->Finish();
  if (!transition || !reason || !extra)
    return 0;
  kervan::core::TransitionRequest request{
      .transition = *transition, .reason = reason->value_or(""), .request_data = &*extra};
  for (const char* state : {"Registered", "Validating", "DeploymentReady", "Rejected"}) {
    auto decision = Machine().Check(state, request, Json::object());
    if (!decision && decision.error().message.empty())
      __builtin_trap();
  }
  return 0;
}
