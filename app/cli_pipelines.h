// The parts of `kervan pipelines` (app/cli_pipelines.cc) that need no server:
// the DAG text rendering and the workdir a submitted spec gets. Pure
// functions, thread-safe.
#pragma once

#include <string>

#include "core/core.h"

namespace kervan::app {

// One line per step, in the order given (the server's topological order),
// indented by depth (the longest path from a root), with the step's state
// (a run) or type (a spec) in brackets, "(cached)" on a cache hit and
// "<- a, b" naming its dependencies:
//   [Succeeded] ingest
//   [Succeeded]   validate  <- ingest
//   [Running  ]   split     <- ingest, validate
// Takes a pipeline run, a spec, or a pipeline version (its "spec"); "" when
// there are no steps.
std::string RenderDag(const core::Json& run_or_spec);

// The spec text to submit for a spec file whose directory is `dir` (absolute):
// without a top-level `workdir`, or with an empty or null one, it gets
// `workdir: "<dir>"`; a relative workdir is made absolute against `dir`; an
// absolute one is kept. The line is appended (the user's line numbers stay
// right in the server's messages) or replaces the `workdir:` line; when that
// would not read back as the same document plus the workdir (flow style, an
// explicit end of document), the document is re-emitted instead. Text that is
// not a YAML mapping comes back unchanged, for the server to report on.
std::string WithWorkdir(const std::string& yaml, const std::string& dir);

}  // namespace kervan::app
