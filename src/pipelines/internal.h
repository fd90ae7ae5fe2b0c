// Shared inside the pipelines module; not part of its public header.
#pragma once

#include <string>

#include "pipelines/pipelines.h"

namespace kervan::pipelines {

// The durable event-log subscription that dataset and event triggers follow.
inline constexpr std::string_view kTriggerSubscription = "pipelines.triggers";

// The orchestrator's own context, in `project`.
inline store::CommandContext System(const std::string& project, const std::string& correlation = "",
                                    const std::string& causation = "") {
  return {.actor = std::string(kPipelinesActor),
          .correlation_id = correlation,
          .causation_id = causation,
          .project = project};
}

using core::StatusOf;

// Stored JSON text, or `fallback` when it does not parse.
inline Json ParseOr(const std::string& text, Json fallback) {
  Json j = Json::parse(text, nullptr, false);
  return j.is_discarded() ? fallback : j;
}

}  // namespace kervan::pipelines
